"""The top-level ``__all__`` is complete, sorted, and every name resolves."""

import tq_agents


def test_all_is_sorted_and_resolves() -> None:
    names = tq_agents.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(tq_agents, name), name


def test_public_names_are_exported() -> None:
    public = {
        n
        for n, v in vars(tq_agents).items()
        if not n.startswith("_")
        and not isinstance(v, type(tq_agents))
        and getattr(v, "__module__", "").startswith("tq_agents")
    }
    missing = public - set(tq_agents.__all__)
    assert not missing, f"exported but not in __all__: {sorted(missing)}"
