---@meta
-- LuaLS annotations for policies (policies/*.lua and team policy_paths).
-- A policy returns a Policy table; see docs/policies.md.

---@class Policy
---@field name string shown in plans and the journal
---@field description? string one line
---@field needs? string[] "lint" for m.lint; "data" for m.data; "posix" to be allowed require "posix"
---@field applies fun(m: Evidence, env: EnvInfo): boolean, string? true when this policy acts; else false and why not
---@field decide fun(m: Evidence, plan: Plan, env: EnvInfo) describe the actions through plan

---@class EnvInfo
---@field name string environment name ("default" without migfix.lua)
---@field server_version integer e.g. 150020
---@field unit "file"|"statement" how Prisma sends a migration file
---@field forbid table<string, boolean> forbidden actions
---@field backup table the environment's backup rules

---@class EvidenceFile
---@field path string
---@field checksum string the local file's checksum
---@field failed_checksum? string the checksum the failed attempt recorded
---@field changed_since_failure? boolean

---@class EvidenceError
---@field sqlstate? string e.g. "23505"
---@field message? string
---@field class? "transient"|"data"|"schema"|"syntax"|"permission"|"transaction"|"unknown"
---@field detail? string
---@field object? string the constraint/relation/column the message names

---@class EvidenceObject
---@field kind string table | column | index | constraint | enum | enum_value | ...
---@field schema? string
---@field name string
---@field table? string
---@field action "create"|"alter"|"drop"|"rename"|"unverifiable"
---@field state "present"|"missing"|"different"|"absent"|"still_present"|"unverifiable"
---@field diffs {field: string, expected: any, found: any}[]
---@field line? integer

---@class Evidence
---@field name string migration folder name
---@field state string ledger state ("failed")
---@field verdict "complete"|"absent"|"partial"|"drifted"|"unverifiable"
---@field summary string
---@field file EvidenceFile
---@field error EvidenceError
---@field execution {all_or_nothing: boolean, unit: string, tx_control: table[], non_transactional: table[], engine?: "adapter", reason?: string}
---@field counts {present: integer, missing: integer, different: integer, absent: integer, still_present: integer, unverifiable: integer}
---@field objects EvidenceObject[]
---@field statements {index: integer, line: integer, text: string, kind: string, tx_control: boolean, non_transactional: boolean, unverifiable: boolean}[]
---@field likely_failed_statement? {index?: integer, line?: integer, text?: string, reason: string}
---@field inconsistent? string
---@field invalid_indexes {schema: string, name: string, table?: string}[] INVALID indexes the migration left (interrupted CREATE INDEX / REINDEX CONCURRENTLY)
---@field in_progress? {pid: integer, application_name: string, since: string} another session holds Prisma's lock: a deploy still running
---@field lint? {available: boolean, findings: table[], errors: integer, split: table} for a policy with needs = { "lint" }
---@field data? {status: "holds"|"violated"|"unknown"|"not_applicable", sqlstate: string?, kind: string?, violations: integer?, summary: string?, advice: string?, reason: string?, checks: table[]} for a policy with needs = { "data" } (docs/policies.md "Data evidence")

---@class Plan
local Plan = {}

---Back up before writing (pg_dump custom format, 0600, manifest, verified).
---@param t? {scope?: "full"|"schema"|"ledger", reason?: string}
---@return Plan
function Plan:backup(t) end

---Record the migration applied, exactly as `prisma migrate resolve --applied`.
---@return Plan
function Plan:mark_applied() end

---Record the failed attempt rolled back, exactly as `prisma migrate resolve --rolled-back`.
---@return Plan
function Plan:mark_rolled_back() end

---Mark rolled back, then deploy the current file as `prisma migrate deploy`, under one lock.
---@return Plan
function Plan:redeploy() end

---Drop an INVALID index an interrupted CREATE INDEX CONCURRENTLY left (DROP INDEX CONCURRENTLY IF EXISTS).
---@param t {schema?: string, name: string, table?: string}
---@return Plan
function Plan:drop_invalid_index(t) end

---Afterwards, check the ledger shows the migration applied and not failed.
---@return Plan
function Plan:check() end

---A line in the report.
---@param text string
---@return Plan
function Plan:note(text) end

---No write; exit 1; journaled.
---@param reason string
---@param t? {hint?: string, objects?: EvidenceObject[]}
---@return Plan
function Plan:refuse(reason, t) end
