"""Ready roles: planner, coder, translator, reviewer, support (and a support-reply guard).

Each factory returns an ``Agent`` with the role's instructions in English or Chinese (``lang="en"|"zh"``),
its typed output (``Plan``, ``CodeResult``, ``Translation``, ``Review``, ``SupportReply``) and its tools.
"""

from tq_agents.roles._instructions import INSTRUCTIONS, LANGS, instructions
from tq_agents.roles._roles import RoleAgent, coder, guard, planner, reviewer, support, translator

__all__ = [
    "INSTRUCTIONS",
    "LANGS",
    "RoleAgent",
    "coder",
    "guard",
    "instructions",
    "planner",
    "reviewer",
    "support",
    "translator",
]
