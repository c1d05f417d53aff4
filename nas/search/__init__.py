"""The search in three parts: ``setup`` (check and build everything, write nothing), ``driver``
(study, supernet, progress, report) and ``worker`` (the trial loop and trial scoring), with the
``executors`` that run workers in this process, in local processes or as Ray tasks."""

from nas.search.driver import run_search
from nas.search.setup import Setup, prepare

__all__ = ["Setup", "prepare", "run_search"]
