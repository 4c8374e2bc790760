// The console's script (placeholder until the pages land).
