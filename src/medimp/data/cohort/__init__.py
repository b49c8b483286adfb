"""The cohort directory contract: reading, checking and creating a cohort folder.

* :mod:`~medimp.data.cohort.read` (``read_cohort``) and :mod:`~medimp.data.cohort.view`
  (``Cohort``, the one view of a cohort every stage reads);
* the tables: ``_tables`` (typed rows), ``_values`` (missing values, paths), ``_mapping``
  (study.yaml's ``columns:``/``values:``/``dates:``), ``_roles`` (ranges and units by a column's
  role), ``_table_checks`` (across tables), ``_findings`` (one line per repeated problem);
* :mod:`~medimp.data.cohort.validate` (``medimp validate``, with the image checks of
  ``_geometry_checks``) and :mod:`~medimp.data.cohort.fingerprint`;
* creating one: :mod:`~medimp.data.cohort.init` (``medimp init``, with ``_layout``) and
  :mod:`~medimp.data.cohort.import_medimp` (the original MEDIMP layout, with
  ``_import_clinical``).
"""

from medimp.data.cohort.read import read_cohort
from medimp.data.cohort.view import Cohort, leakage_reason

__all__ = ["Cohort", "leakage_reason", "read_cohort"]
