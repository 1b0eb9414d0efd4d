"""Where heavy work runs: in this process, or on a Dask cluster (``--executor dask``).

nightlake has no scheduler of its own. Work that splits into independent tasks (resolve: one
chunk of lake files each) is handed to an :class:`Executor`; the local one runs the tasks here,
one after the other, and :class:`DaskExecutor` sends them to the workers of a Dask
``distributed`` cluster: a local one it starts (``workers=N``, processes, no dashboard) or an
existing one (``scheduler='tcp://host:8786'``). A task reads and writes the lake by path, so
on a real cluster the lake must sit on a filesystem every worker sees;
:meth:`DaskExecutor.check_visible` asks each worker before any task runs.

Tasks are retried by Dask when their worker dies, so a task must be idempotent: it writes its
output to a temp file and renames it into place (a retry overwrites a whole file with the same
bytes' worth of rows).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nightlake.errors import NightlakeError, UsageError

EXECUTORS = ("local", "dask")

#: Times Dask reruns a task whose worker died (a task that raised is not retried: the error is
#: the answer).
RETRIES = 3


class ExecutorError(NightlakeError):
    """The cluster cannot be reached or cannot run the work (exit code 2)."""

    exit_code = 2


class Executor:
    """Runs tasks in this process, in order."""

    name = "local"

    def map(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``[fn(item, **kwargs) for item in items]``."""
        return [fn(item, **kwargs) for item in items]

    def check_visible(self, path: Path) -> None:
        """Nothing to check: this process is the one that found the path."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Failed:
    """A task's NightlakeError, carried back as a value: our errors' constructors take more
    than the message, so they do not survive pickling as exceptions."""

    def __init__(self, exc: NightlakeError) -> None:
        self.message = str(exc)
        self.exit_code = exc.exit_code


def _failed(result: _Failed) -> NightlakeError:
    error = NightlakeError(result.message)
    error.exit_code = result.exit_code
    return error


def _task(fn: Callable[..., Any], item: Any, **kwargs: Any) -> Any:
    try:
        return fn(item, **kwargs)
    except NightlakeError as exc:
        return _Failed(exc)


def _identity(value: Any) -> Any:
    return value


def _visible(path: str) -> bool:
    return os.path.isdir(path)


class DaskExecutor(Executor):
    """Runs tasks on a Dask cluster: ``scheduler`` (an address) joins one, ``workers`` starts a
    local one with that many worker processes (one thread each)."""

    name = "dask"

    def __init__(self, *, scheduler: str | None = None, workers: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs Dask: pip install 'nightlake[dask]'") from None
        self._cluster = None
        if scheduler is not None and workers is not None:
            raise UsageError("give --scheduler or --workers, not both")
        try:
            if scheduler is not None:
                # how long to try: Dask's distributed.comm.timeouts.connect (config or env)
                self.client = Client(scheduler)
            else:
                self._cluster = LocalCluster(
                    n_workers=workers or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                self.client = Client(self._cluster)
        except (OSError, TimeoutError) as exc:
            if self._cluster is not None:
                self._cluster.close()
            where = scheduler or "a local cluster"
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {where}: {exc.__class__.__name__}"
                f"{': ' + str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc

    @classmethod
    def from_client(cls, client: Any) -> DaskExecutor:
        """An executor over a client the caller owns (tests share one cluster per module)."""
        self = cls.__new__(cls)
        self.client = client
        self._cluster = None
        self._owned = False
        return self

    def map(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``fn(item, **kwargs)`` for each item on the workers; results in the items' order.

        ``kwargs`` (the detrend timeline) travel once, as tasks of their own that every task
        depends on; Dask copies their results to the workers that need them. Not scattered:
        scattered data dies with its worker, a task's result is recomputed. A task's own error
        (a NightlakeError) is raised here with its message and exit code.
        """
        items = list(items)
        with warnings.catch_warnings():
            # "large object in graph": deliberate, it is sent once and then shared by the tasks
            warnings.simplefilter("ignore", UserWarning)
            shared = {k: self.client.submit(_identity, v, pure=False) for k, v in kwargs.items()}
        futures = self.client.map(
            _task, [fn] * len(items), items, retries=RETRIES, pure=False, **shared
        )
        try:
            results = self.client.gather(futures)
        except Exception as exc:  # a worker that died more than RETRIES times, a lost scheduler
            raise ExecutorError(
                f"the Dask cluster failed to run the work: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        finally:
            for future in [*futures, *shared.values()]:
                future.release()
        for result in results:
            if isinstance(result, _Failed):
                raise _failed(result)
        return results

    def check_visible(self, path: Path) -> None:
        """Every worker sees ``path`` (the lake), else one error naming the first that does not."""
        where = str(Path(path).resolve())
        answers = self.client.run(_visible, where)
        blind = sorted(worker for worker, seen in answers.items() if not seen)
        if blind:
            raise ExecutorError(
                f"{where}: Dask worker {blind[0]} cannot see the lake "
                f"({len(blind)} of {len(answers)} workers); the lake must be on a filesystem "
                "every worker mounts at the same path"
            )

    def close(self) -> None:
        if getattr(self, "_owned", True):
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


def executor(name: str, *, scheduler: str | None = None, workers: int | None = None) -> Executor:
    """The executor the CLI options name (``--executor``, ``--scheduler``, ``--workers``)."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    if name == "local":
        if scheduler is not None or workers is not None:
            raise UsageError("--scheduler and --workers need --executor dask")
        return Executor()
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: expected at least 1")
    return DaskExecutor(scheduler=scheduler, workers=workers)
