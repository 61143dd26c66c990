"""reports: result tables -> figures and HTML/Markdown reports (grows with the design-space issues)."""
