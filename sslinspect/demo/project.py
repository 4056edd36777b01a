"""The demo *project*: generated demo images, a project over them, scanned, with the demo's few-shot labels.

This is what the desktop app's "Open demo project" builds (no training): a newcomer can click through the whole
wizard without data of their own. Calling it again opens the existing project and only redoes what is missing.
"""

from __future__ import annotations

from pathlib import Path

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.data.scan import scan_project
from sslinspect.demo.dataset import generate_demo
from sslinspect.errors import Cancelled, ProjectError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.labels import import_labels
from sslinspect.project import Project, is_project


def open_demo_project(
    out_dir: Path,
    *,
    product: str = "metal",
    n_images: int = 600,
    size: int = 128,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> Project:
    """Create (or reopen) ``out_dir/<product>.sslproj`` over demo images generated in ``out_dir/data``.

    Raises:
        ProjectError: if the project folder exists and is not a demo project.
        Cancelled: if ``cancel`` fires while the images are generated or scanned.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    root = out_dir / f"{product}.sslproj"
    if is_project(root):
        project = Project.open(root)
        if not project.data.get("demo"):
            project.close()
            raise ProjectError(f"{root}: exists and is not a demo project")
    else:
        project = None

    def _progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            if cancel.is_cancelled():
                raise Cancelled("demo generation cancelled")
            report(Progress(stage="demo", step=done, total=total, message="generating demo images"))

    ds = generate_demo(out_dir / "data", product=product, n_images=n_images, size=size, progress=_progress)
    created = project is None
    if project is None:
        project = Project.create(root, name=f"demo-{product}")
        project.update(lambda d: d.__setitem__("demo", True))
    project.add_source(ds.unlabeled_dir)
    scan = scan_project(project, report=report, cancel=cancel)
    if created:  # the example labels seed a new project only: a reopened one keeps the user's own labelling
        for problem in import_labels(project, ds.labels_csv).problems:
            report(Log(level="WARNING", message=problem))
    labelled = project.store.counts()["labelled"]
    report(Log(level="INFO", message=f"demo project {root.name}: {scan.ok} images, {labelled} labelled"))
    return project
