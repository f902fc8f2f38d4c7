"""A PostgreSQL server of Debian's package in a folder of its own, on 127.0.0.1, for trying the Postgres storage
and for the tests (a team's cluster uses its own database; see dagster.yaml beside this file).

    python deploy/postgres/local_server.py start --dir .postgres --port 5433 --password dagster
    python deploy/postgres/local_server.py stop --dir .postgres

``start`` creates the cluster on first use (user and database ``dagster``, password authentication), starts it
listening on 127.0.0.1 only and waits until it accepts connections; it prints the ``DAGSTER_PG_*`` variables for
``deploy/postgres/dagster.yaml``. ``initdb`` refuses to run as root: as root, the server runs as the ``postgres``
user (created by Debian's package).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

USER = DB = "dagster"


def pg_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else from Debian's versioned folder (the newest)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        sys.exit(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def start(folder: Path, port: int, password: str) -> dict[str, str]:
    folder = folder.resolve()
    data, sockets = folder / "data", folder / "sockets"
    for path in (folder, sockets):
        path.mkdir(parents=True, exist_ok=True)
        _give_to_owner(path)
    if not (data / "PG_VERSION").exists():
        pwfile = folder / "pwfile"
        pwfile.write_text(password, encoding="utf-8")
        _give_to_owner(pwfile)
        subprocess.run(
            _as_owner([pg_bin("initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
                       "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C"]),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        pwfile.unlink()
    subprocess.run(
        _as_owner([pg_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                   "-o", f"-h 127.0.0.1 -p {port} -k {sockets}", "start"]),
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    env = {"PGPASSWORD": password, **os.environ}
    exists = subprocess.run(
        [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if exists != "1":
        subprocess.run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB], env=env, check=True)
    return {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_USERNAME": USER,
        "DAGSTER_PG_PASSWORD": password,
        "DAGSTER_PG_DB": DB,
    }


def stop(folder: Path) -> None:
    data = folder.resolve() / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path(".postgres"))
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--password", default="dagster")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.dir)
        return
    for key, value in start(args.dir, args.port, args.password).items():
        print(f"export {key}={value}")


if __name__ == "__main__":
    main()
