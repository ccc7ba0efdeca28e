"""`python -m nexus.tasks.arithmetic --out DIR --n N --seed S`: write the task's JSONL files."""

from nexus.tasks.arithmetic.problems import main

raise SystemExit(main())
