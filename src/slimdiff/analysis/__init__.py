"""The paper's frequency analyses: the Wiener-filter view (wiener), the toy experiment (toy), blur sensitivity (blur)."""
