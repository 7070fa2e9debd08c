"""Imports the built-in plug-ins that live above the layer whose registry holds them, so that a lookup by name
finds them without that layer importing them (`mtl.registry` imports this module the first time a name is not
found). A fork's own plug-ins need no line here: name them as 'package.module:attr' or import them first.
"""
# Train-step variants (mtl.train.registry.TRAIN_STEPS) defined in higher layers.
import mtl.control.sandwich_step  # noqa: F401  'sandwich'
import mtl.nested_draft  # noqa: F401  'nested_draft'
import mtl.train.teacher_distill  # noqa: F401  'teacher_distill'
# Models (mtl.models.registry.MODELS) and datasets (mtl.data.registry.DATASETS) outside their package's imports.
import mtl.models.lm  # noqa: F401  'lm'
import mtl.models.multitask  # noqa: F401  'multitask'
import mtl.models.taskexpert  # noqa: F401  'taskexpert'
import mtl.data.text.datasets  # noqa: F401  'gcide_text', 'mqar', 'mqar-L-K-V'
import mtl.testing.synthetic_data  # noqa: F401  'synthetic'
