"""`import tq_agents` must not import heavy or optional dependencies."""

import subprocess
import sys


def test_import_is_light() -> None:
    code = (
        "import tq_agents, sys; heavy = {'torch','transformers','docker','openai','fastapi','autogen_agentchat'}"
        " & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
