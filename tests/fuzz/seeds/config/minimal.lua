return { environments = { dev = { url = "postgresql://u@localhost/db", policies = { "apply-if-complete" } } } }
