"""The lcmd text plugin: character and BPE codecs, text data sets, bits per character."""
