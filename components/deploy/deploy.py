"""Deploy step: roll out what push published (nothing when push published nothing)."""

from __future__ import annotations

import json

from kfloop import config
from kfloop import deploy as kdeploy


def deploy_pushed(
    pushed_path: str,
    store_uri: str,
    model_name: str,
    mode: str = "local",
    namespace: str = "",
    canary_percent: int = -1,
    *,
    serving_image: str = "",
    notify_config: str = "",
) -> kdeploy.Outcome | None:
    """Rolls out the version named in push's ``pushed`` JSON; returns None when nothing was pushed.

    Args:
        pushed_path: Push's JSON output (``{"pushed", "version", "alias", ...}``).
        store_uri: Model store root.
        model_name: Model name.
        mode: ``local`` or ``cluster``.
        namespace: Kubernetes namespace ("" = DeployConfig default).
        canary_percent: Canary share (-1 = DeployConfig default; 0 = full rollout).
        serving_image: Predictor image the pipeline was compiled with ("" = kfloop.config's default).
        notify_config: Notification channels: an undone cluster rollout sends ``deploy.undone``.
    """
    with open(pushed_path) as f:
        pushed = json.load(f)
    if not pushed.get("pushed"):
        return None
    return kdeploy.deploy(
        store_uri,
        model_name,
        version=pushed["version"],
        mode=mode,
        namespace=namespace or None,
        canary_percent=None if canary_percent < 0 else canary_percent,
        cfg=config.DeployConfig(),
        image=serving_image or config.SERVING_IMAGE,
        reason=f"pipeline deploy of pushed {pushed['version']}",
        notify_config=notify_config,
    )
