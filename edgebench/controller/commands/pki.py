"""``controller pki``: certificates, CRLs, passwords and job-signing keys for the
broker (docs/SECURITY.md). The operations are edgebench/common/pki.py's functions;
this module only parses options and prints what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.common import pki
from edgebench.common.console import markup
from edgebench.controller.commands._options import out

app = typer.Typer(help="Certificates, CRLs, passwords and job-signing keys for the broker (docs/SECURITY.md).",
                  no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="PKI directory.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace what exists.")]
DaysOpt = Annotated[int, typer.Option("--days", help="Certificate validity, days.")]
HostOpt = Annotated[list[str] | None, typer.Option(
    "--hostname", help="Name or address devices use to reach the broker (repeatable; localhost is always in).")]


def _say(message: str) -> None:
    out.print(markup(message))


@app.command(epilog="Example: controller pki init --dir pki --hostname mqtt.plant.local --hostname 10.20.0.5")
def init(root: DirOpt = Path("pki"), hostname: HostOpt = None, days: DaysOpt = pki.LEAF_DAYS,
         force: ForceOpt = False) -> None:
    """Create both CAs, their CRLs and the broker's certificate."""
    layout = pki.init_pki(root, hostname or [], leaf_days=days, force=force)
    _say(f"CAs, CRLs and server certificate written; copy {layout.broker_dir}/ to the broker's "
         f"/mosquitto/secrets and keep {layout.private_dir}/ offline")


@app.command(epilog="Example: controller pki server --dir pki --hostname mqtt.plant.local")
def server(root: DirOpt = Path("pki"), hostname: HostOpt = None, days: DaysOpt = pki.LEAF_DAYS,
           force: ForceOpt = False) -> None:
    """Reissue the broker's certificate (new host names)."""
    _say(f"wrote {pki.issue_server_cert(pki.PkiLayout(root), hostname or [], days=days)}")


@app.command(epilog="Example: controller pki device --dir pki jetson-agx-01 --password")
def device(
    device_id: Annotated[str, typer.Argument(help="The device's id (letters, digits, . _ -).")],
    root: DirOpt = Path("pki"),
    password: Annotated[bool, typer.Option(
        "--password", help="Also create a random password for the password listener (8884).")] = False,
    no_cert: Annotated[bool, typer.Option("--no-cert", help="Password only, no client certificate.")] = False,
    days: DaysOpt = pki.LEAF_DAYS,
    force: ForceOpt = False,
) -> None:
    """Provision a device: a client certificate, a password, or both."""
    layout = pki.PkiLayout(root)
    secret = pki.generate_password() if (password or no_cert) else None
    bundle = pki.issue_device(layout, device_id, cert=not no_cert, password=secret, days=days, force=force)
    _say(f"device bundle in {bundle}/" + (f"; password added to {layout.passwd}" if secret else ""))


@app.command(epilog="Example: controller pki controller --dir pki --name alice-laptop")
def controller(
    root: DirOpt = Path("pki"),
    name: Annotated[str, typer.Option(help="Bundle name (one per operator or workstation).")] = pki.CONTROLLER_USER,
    days: DaysOpt = pki.LEAF_DAYS,
    force: ForceOpt = False,
) -> None:
    """Issue a controller certificate (from the operator CA)."""
    _say(f"controller bundle in {pki.issue_controller(pki.PkiLayout(root), name, days=days, force=force)}/")


@app.command(epilog="Example: controller pki revoke --dir pki jetson-agx-01")
def revoke(
    device_id: Annotated[str | None, typer.Argument(help="The device to revoke.", show_default=False)] = None,
    root: DirOpt = Path("pki"),
    controller_name: Annotated[str | None, typer.Option(
        "--controller", metavar="NAME", help="Revoke controllers/NAME instead.", show_default=False)] = None,
) -> None:
    """Revoke a device (certificate and password), or a controller bundle."""
    layout = pki.PkiLayout(root)
    if controller_name:
        serial = pki.revoke(layout, layout.controller_dir(controller_name) / "client.crt")
        _say(f"certificate serial {serial:x} added to {layout.operator_ca_crl}")
    elif device_id:
        _say("\n".join(pki.revoke_device(layout, device_id)))
    else:
        raise pki.PkiError("name a device id or --controller NAME")
    _say("restart the broker to apply (it reads CRLs and the password file at start)")


@app.command(epilog="Example: controller pki account --dir pki controller-monitor")
def account(name: Annotated[str, typer.Argument(help="Account name.")], root: DirOpt = Path("pki"),
            force: ForceOpt = False) -> None:
    """A password-only service account, e.g. controller-monitor."""
    layout = pki.PkiLayout(root)
    _say(f"password in {pki.issue_account(layout, name, force=force)}; added to {layout.passwd}")


@app.command("signing-key", epilog="Example: controller pki signing-key --dir pki")
def signing_key(root: DirOpt = Path("pki"), force: ForceOpt = False) -> None:
    """Create the controller's Ed25519 job-signing key pair (jobs.key stays, jobs.pub goes to agents)."""
    key_path, pub_path = pki.create_signing_key(pki.PkiLayout(root), force=force)
    _say(f"wrote {key_path} (controller only) and {pub_path} (give to agents)")
