"""What the tests share: system components they start on loopback, the fakes, plug-ins
and helpers. On sys.path through the tests folder (pytest puts it there)."""
