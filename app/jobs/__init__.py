"""Jobs: long work in a worker process (:class:`ProcessJob`) or short work in a thread (:class:`ThreadJob`)."""

from app.jobs.base import Job, JobStatus
from app.jobs.process_job import ProcessJob, worker_env, worker_environ
from app.jobs.thread_job import ThreadJob

__all__ = ["Job", "JobStatus", "ProcessJob", "ThreadJob", "worker_env", "worker_environ"]
