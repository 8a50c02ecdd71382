-- The worker template: not spawned at boot; the supervisor spawns copies of it.
return {
  template = true,
  mode = "one_shot",
  executor = "llm",
}
