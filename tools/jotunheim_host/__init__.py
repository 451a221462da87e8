"""Host side of Jotunheim: the `jotunheim` command, capture parsing and the demo."""
