"""Jobs: the job format, running one party's roles, and local simulation."""

from rainbridge.jobs.spec import ComponentSpec, InputRef, JobSpec, OutputSpec, load_job, parse_job

__all__ = ["ComponentSpec", "InputRef", "JobSpec", "OutputSpec", "load_job", "parse_job"]
