"""Image files in, arrays out: the readers and what they read from headers.

* :mod:`~medimp.data.io.readers`: the reader registry (``register_reader``, ``get_reader``,
  ``read_volume``, ``read_series``); the base class and volume types in ``_reader_base``, one
  module per format (``reader_nifti``, ``reader_dicom``);
* DICOM headers (``dicom_header``) and dynamic DICOM series (``dicom_dynamic``);
* :mod:`~medimp.data.io.frames`: the phases taken out of a dynamic (4D) series (study.yaml's
  ``dynamic:`` section);
* :mod:`~medimp.data.io.geometry`: voxel sizes, orientation and fields of view (numpy + nibabel);
* :mod:`~medimp.data.io.monai_reader`: medimp's readers as a MONAI ``ImageReader``.

Nothing here reads a cohort's tables (:mod:`medimp.data.cohort`).
"""
