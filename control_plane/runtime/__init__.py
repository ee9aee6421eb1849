"""Runtimes that start and stop one-job agent tasks (ECS Fargate, local processes)."""
