"""A custom workflow in a dozen lines. Run it: tq run haiku --file examples/custom_workflow.py --input "queues"."""

from tq_agents.workflows import workflow

from tq_agents import Agent, Review, Workflow


@workflow("haiku", description="Write a haiku; a critic sends it back at most twice.")
def haiku(model):
    poet = Agent("poet", "Write a haiku about the user's topic. If the critic objects, rewrite it.")
    critic = Agent("critic", "Approve a 5-7-5 haiku; otherwise ask for a revision.", output_type=Review)
    return (
        Workflow("haiku", model=model)
        .add_node(poet, max_visits=3)
        .add_node(critic)
        .add_edge("poet", "critic")
        .add_edge("critic", "poet", condition=lambda r: r.verdict == "revise")
        .set_entry("poet")
    )
