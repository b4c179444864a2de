"""lcmd plugin for graphs: adjacency codec, synthetic and user graph sets, MMD and V.U.N."""
