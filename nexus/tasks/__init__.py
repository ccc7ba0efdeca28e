"""Built-in tasks: workloads with generated data, ground-truth grading, a policy and a task LM.

The library core (models, backbones, training, sampling) never imports a task; studies and tests
do. A task package may register a judge rationale under its own name (`nexus.data.judge`).
"""
