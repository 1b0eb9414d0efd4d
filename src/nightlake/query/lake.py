"""The lake as queries see it: :class:`Lake`, the library's entry point (``from nightlake
import Lake``).

A :class:`Lake` is a :class:`nightlake.lake.LakeDirectory` (paths, manifest, partition files,
writer lock) with its DuckDB side: the views over the partition files and the detrend mirror,
the macros of ``sql/``, the views derived from them, and one cached read-only connection that
follows the lake on disk. The directory knows nothing of this, so the core stays below the
query layer and the detrend mirror.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.detrends import mirror
from nightlake.errors import LakeError, first_line
from nightlake.files import file_stamp
from nightlake.lake import IMAGES, LakeDirectory
from nightlake.query.astro import create_derived_views, query_table
from nightlake.query.stream import open_connection, private_temp, spill_directory, stream
from nightlake.sql import load_macros

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


def _why_unreadable(exc: Exception, lake: LakeDirectory) -> str:
    """DuckDB's reason, on one line; for a lake under a path with a backslash, which DuckDB's
    file globs never match (a ``\\`` in the name is not escapable), what to do."""
    if "\\" in str(lake.images_dir.resolve()):
        return "DuckDB cannot read files under a path holding a backslash; move the lake"
    return first_line(exc)  # not the view's text that DuckDB quotes after


class Lake(LakeDirectory):
    """A nightlake lake, to query.

    >>> lake = Lake("demo-lake")                                      # doctest: +SKIP
    >>> lake.sql("SELECT night, count(*) n FROM images GROUP BY night") # doctest: +SKIP
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, confined: bool = False
    ) -> None:
        """``confined``: user SQL reads the lake's images and detrend mirror and no other
        files (DuckDB's external access off but for where they really are:
        :func:`~nightlake.query.stream.confined_places`): what ``nightlake serve`` runs,
        where the SQL comes from whoever reaches the page."""
        super().__init__(path)
        self.confined = confined
        self._connection: tuple | None = None  # (disk state, connection) for sql()
        self._connection_lock = threading.Lock()

    def view_sql(self) -> str:
        """The SQL that defines the lake's views (absolute paths; for any DuckDB client).

        ``images`` reads every form: per-night files, a compacted year's parts
        (``year=Y/``, target and night columns) and format 3's target-years
        (``target=T/year=Y/``), with the precedence :mod:`nightlake.ingest.compact` gives.
        """
        mirrored = mirror.view_sql(self)  # detrends, detrend_filters
        return "\n".join(s for s in (self._images_view_sql(), mirrored) if s)

    def _images_view_sql(self) -> str:
        files = self.image_files()
        if not files:
            return ""
        return f"CREATE OR REPLACE VIEW {IMAGES} AS {self.images_select_sql(files=files)};"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the lake's views and every macro of ``sql/``."""
        import duckdb

        if not self.path.is_dir():
            raise LakeError(
                f"{self.path}: no lake here "
                f"(create one with: nightlake convert SOURCE --lake {self.path})"
            )
        # A large audit or resolve spills into a directory of its own, not ./.tmp of wherever
        # the user is; no extension is fetched or loaded (given at connect: free, where each
        # SET costs ≈ 0.4 ms).
        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "temp_directory": spill_directory(),
            },
        )
        # footers are read once per connection, not once per query; DuckDB's own progress
        # bar would write into our stdout
        con.execute("SET parquet_metadata_cache = true; SET enable_progress_bar = false;")
        views = self._images_view_sql()
        try:
            if views:
                con.execute(views)
            # Views only: over a fresh mirror, or failing with the reason. Never a sync: a
            # read takes no lock and writes nothing (sync: nightlake.detrends.sync).
            mirror.attach(self, con)
        except duckdb.Error as exc:  # DuckDB binds a view when it is made: a file it reads
            con.close()
            why = _why_unreadable(exc, self)
            raise LakeError(f"{self.path}: cannot read the lake: {why}") from None
        load_macros(con)
        create_derived_views(con)  # obscore: a macro over images
        return con

    def sql(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run ``query`` (with named ``$params`` bound by DuckDB) and return an Arrow table.

        Read-only like ``nightlake sql`` (see :mod:`nightlake.query.stream`): statements that could
        write files are refused with :class:`QueryError`.
        """
        con = self.cursor()
        try:
            return stream(con, query, params).read_all()
        finally:
            con.close()

    def table(self, query: str, params: dict[str, Any] | None = None, *, quantity: bool = True):
        """Run ``query`` and return an astropy ``QTable`` (``Table`` with ``quantity=False``)
        whose columns carry their source columns' units (see :mod:`nightlake.query.astro`)."""
        return query_table(self, query, params, quantity=quantity)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read-only cursor (locked down like ``nightlake sql``) on this Lake's cached
        connection, reconnecting when the lake changed; close it.

        Repeated ``sql`` calls share one database (views, macros, Parquet footers already
        read), each on its own cursor, so threads may query at once. The connection is
        rebuilt when the lake manifest (which every writer of the images' files rewrites:
        :meth:`LakeDirectory.write_manifest`), the detrend mirror or its database changed on
        disk, so a query never sees a stale mirror or a stale choice of view; and when the
        private place it spills under is no longer this user's own (:func:`private_temp`: a
        temp cleaner removed it, made again here, or someone else took its name), so a
        server that runs for weeks still spills where only its user may look.
        """
        with self._connection_lock:
            state = (self.disk_state(), private_temp())
            cached = self._connection
            if cached is None or cached[0] != state:
                # The old connection is dropped, not closed: a cursor of it may still be
                # running in another thread; it goes when its last cursor does. The state is
                # taken before connecting, so a change during connect() is seen next time.
                self._connection = (state, open_connection(self))
            return self._connection[1].cursor()

    def disk_state(self) -> tuple:
        """Stamps of what a connection's views depend on (a few stats and the mirror's small
        manifest; never the database's content)."""
        from nightlake.detrends.detreg.journal import journal_path

        link_dir = self.detrends_dir
        link = os.readlink(link_dir) if link_dir.is_symlink() else None
        manifest = link_dir / mirror.MANIFEST
        try:
            db = json.loads(manifest.read_text()).get("db_path")
        except (OSError, ValueError, AttributeError):
            db = None
        # the journal too: a rewrite may get the inode its predecessor freed (ext4), with the
        # same size in the same mtime tick, but every journaled write makes the journal grow
        db_stamp = (
            (file_stamp(Path(db)), file_stamp(journal_path(db))) if isinstance(db, str) else None
        )
        try:  # its bytes, not a stamp: two writes may share an mtime tick, a size, an inode
            lake_manifest = self.manifest_path.read_bytes()
        except OSError:
            lake_manifest = None
        return (lake_manifest, link, file_stamp(manifest), db_stamp)
