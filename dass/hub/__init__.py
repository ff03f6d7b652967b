"""Hub side of dass: stacks registry, spawn form, user_options validation, spawners."""
