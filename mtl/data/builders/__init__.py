"""TFDS builders (array_record) of the offline datasets; one module per dataset."""
