-- S1: a statement that cannot run in a transaction block (CREATE INDEX
-- CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, VACUUM, ...)
-- shares its unit with other statements or sits inside BEGIN ... COMMIT.
return {
  id = "S1",
  title = "non-transactional statement mixed with others",
  default_severity = "error",
  check = function(s, ctx)
    if not s.non_transactional then return nil end
    local what = s.non_transactional_reason or s.kind
    local alt = "put it in a migration of its own, alone in the file, with IF [NOT] EXISTS so a retry after a failure is safe"
    local p = s.after_begin -- the BEGIN earlier in this transaction
    if p then
      return { { why = ("%s cannot run inside a transaction block, and BEGIN at line %d opened one: it fails with 25001"):format(what, p.line),
                 alternative = alt } }
    end
    if ctx.unit_mode == "file" and #ctx.statements > 1 then
      return { { why = ("%s cannot run inside a transaction block; with unit = \"file\" Prisma sends the whole file (%d statements) as one query, an implicit transaction, so it fails with 25001 and the migration is recorded as failed"):format(what, #ctx.statements),
                 alternative = alt } }
    end
    return nil
  end,
}
