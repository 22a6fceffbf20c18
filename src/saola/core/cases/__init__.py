"""The operations loop's unit of work: incidents, citizen reports, directives and their tasks, with SOPs."""
