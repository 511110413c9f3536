"""The development stack, outside the shipped package: throwaway Postgres and Redis
(:mod:`.servers`), Prometheus, Alertmanager and the alert sink (:mod:`.monitoring`), our own
processes (:mod:`.processes`), a whole throwaway stack (:mod:`.stack`), ``make up``
(:mod:`.up`) and the one percentile convention (:mod:`.stats`). ``make up``, the test suite, the
load tests and the benchmarks all start things through here."""
