"""Rankings, consensus, scoring and the leaderboard."""
