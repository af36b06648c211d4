"""Read: CT images and label maps in and out of files, with checks before and after the native readers."""
