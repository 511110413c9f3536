"""Tests of the monitoring stack: alert rules, Alertmanager, dashboards, runbooks, compose.

These need no running app: promtool, amtool and prometheus-alertmanager (Debian packages
``prometheus`` and ``prometheus-alertmanager``) and the files in the repository.
"""
