"""``recx ui``: the operator and annotator console (Starlette + server-rendered Jinja2 HTML).

Not a developer tool (``devtools``): operators run it next to a deployment. It reads only Kafka
(its own consumer group) and the prepared data, writes only feedback events, and is never
imported by the worker runtime.
"""
