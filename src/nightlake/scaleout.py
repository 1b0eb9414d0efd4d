"""Where heavy work runs: in this process, or on a Dask cluster (``--executor dask``).

nightlake has no scheduler of its own. Work that splits into independent tasks (resolve: one
chunk of lake files each; convert: one source read each, then one partition written each) is
handed to an :class:`Executor`; the local one runs the tasks here, one after the other, and
:class:`DaskExecutor` sends them to the workers of a Dask
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from nightlake.errors import NightlakeError, UsageError, first_line

EXECUTORS = ("local", "dask")

#: Times Dask reruns a task whose worker died (a task that raised is not retried: the error is
#: the answer).
RETRIES = 3


class ExecutorError(NightlakeError):
    """The cluster cannot be reached or cannot run the work (exit code 2)."""

    exit_code = 2


def cores() -> int:
    return max(2, os.cpu_count() or 2)


def threaded(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, items)`` on a thread per core, yielding results in order as they finish
    (pyarrow's parser and writer, hashlib and numpy release the GIL, so every core is used)."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    workers = min(len(items), cores())
    if workers < 2:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nightlake")
    try:
        yield from pool.map(fn, items)
    finally:  # closed early (a failure): drop the calls not started
        pool.shutdown(wait=True, cancel_futures=True)


class Executor:
    """Runs tasks in this process, in order."""

    name = "local"

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        done: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """``[fn(item, **kwargs) for item in items]``, calling ``done(i)`` as item ``i``
        finishes. An item may hold results of :meth:`keep` (alone, or in a list or tuple):
        the task gets their values."""
        results = []
        for i, item in enumerate(items):
            results.append(fn(item, **kwargs))
            if done:
                done(i)
        return results

    def keep(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """Like :meth:`map`, but the results stay where they were computed: handles for later
        tasks (here, the values themselves)."""
        return self.map(fn, items, **kwargs)

    def release(self, handles: Iterable[Any]) -> None:
        """Let results of :meth:`keep` go."""

    def check_visible(self, *paths: Path) -> None:
        """Nothing to check: this process is the one that found the paths."""

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


def _blind_to(paths: list[str]) -> str | None:
    """The first of ``paths`` (directories) this worker cannot see."""
    return next((p for p in paths if not os.path.isdir(p)), None)


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
                f"{': ' + first_line(exc) if str(exc) else ''}"
            ) from exc

    @classmethod
    def from_client(cls, client: Any) -> DaskExecutor:
        """An executor over a client the caller owns (tests share one cluster per module)."""
        self = cls.__new__(cls)
        self.client = client
        self._cluster = None
        self._owned = False
        return self

    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *,
        done: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """``fn(item, **kwargs)`` for each item on the workers; results in the items' order.

        ``kwargs`` (the detrend timeline) travel once, as tasks of their own that every task
        depends on; Dask copies their results to the workers that need them. Not scattered:
        scattered data dies with its worker, a task's result is recomputed. A task's own error
        (a NightlakeError) is raised here with its message and exit code.
        """
        from distributed import as_completed

        futures, shared = self._submit(fn, items, kwargs, wrap=True)
        try:
            if done:
                index = {future.key: i for i, future in enumerate(futures)}
                for future in as_completed(futures):
                    done(index[future.key])
            results = self.client.gather(futures)
        except Exception as exc:  # a worker that died more than RETRIES times, a lost scheduler
            raise ExecutorError(
                f"the Dask cluster failed to run the work: {exc.__class__.__name__}: "
                f"{first_line(exc)}"
            ) from exc
        finally:
            self.release([*futures, *shared])
        for result in results:
            if isinstance(result, _Failed):
                raise _failed(result)
        return results

    def keep(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """Futures of ``fn(item, **kwargs)``: the results stay on the workers; a later task
        given one gets its value there (recomputed if its worker died meanwhile). ``fn``
        returns its errors as values: one raised here would fail the later tasks."""
        futures, shared = self._submit(fn, items, kwargs, wrap=False)
        self.release(shared)  # the tasks hold what they need
        return futures

    def release(self, handles: Iterable[Any]) -> None:
        for future in handles:
            future.release()

    def _submit(
        self, fn: Callable[..., Any], items: Iterable[Any], kwargs: dict[str, Any], *, wrap: bool
    ) -> tuple[list[Any], list[Any]]:
        items = list(items)
        with warnings.catch_warnings():
            # "large object in graph": deliberate, it is sent once and then shared by the tasks
            warnings.simplefilter("ignore", UserWarning)
            shared = {k: self.client.submit(_identity, v, pure=False) for k, v in kwargs.items()}
        if wrap:
            futures = self.client.map(
                _task, [fn] * len(items), items, retries=RETRIES, pure=False, **shared
            )
        else:
            futures = self.client.map(fn, items, retries=RETRIES, pure=False, **shared)
        return futures, list(shared.values())

    def check_visible(self, *paths: Path) -> None:
        """Every worker sees each of ``paths`` (the lake first, then any input directories),
        else one error naming the first worker that does not."""
        wanted = list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
        answers = self.client.run(_blind_to, wanted)
        blind = sorted((worker, where) for worker, where in answers.items() if where)
        if blind:
            worker, where = blind[0]
            what = "the lake" if where == wanted[0] else "this input directory"
            raise ExecutorError(
                f"{where}: Dask worker {worker} cannot see {what} ({len(blind)} of "
                f"{len(answers)} workers); the lake and the inputs must be on a filesystem "
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
