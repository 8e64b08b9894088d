"""Detection quality on public benchmarks (SKAB, NAB): protocols, scoring rules, leaderboards, reports."""
