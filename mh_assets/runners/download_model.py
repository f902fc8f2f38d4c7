"""Child process: download a pinned model revision from ModelScope or Hugging Face into ``output_dir``.

Extras: ``model_id``, ``revision``, ``hub`` (modelscope | huggingface), ``output_dir``. Tokens come from
``MODELSCOPE_API_TOKEN`` / ``HF_TOKEN`` in the environment.
"""

from __future__ import annotations

import os


def download(model_id: str, revision: str, hub: str, output_dir: str) -> str:
    if hub == "modelscope":
        from modelscope import snapshot_download

        return snapshot_download(model_id, revision=revision, local_dir=output_dir)
    from huggingface_hub import snapshot_download as hf_snapshot_download

    return hf_snapshot_download(model_id, revision=revision, local_dir=output_dir, token=os.environ.get("HF_TOKEN"))


def main() -> None:
    from mh_assets.runners import child_pipes

    with child_pipes() as pipes:
        ex = pipes.extras
        path = download(ex["model_id"], ex["revision"], ex["hub"], ex["output_dir"])
        pipes.report_asset_materialization(metadata={"downloaded_to": path})


if __name__ == "__main__":
    main()
