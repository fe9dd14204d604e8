// The IAM policy evaluator behind the local AWS emulator's enforcement (crates/localaws/src/iam).
//
// One request per line on stdin, one answer per line on stdout, in order:
//   {"id": 1, "principal": ARN, "action": "ec2:CreateTags", "resource": ARN or "*", "account": "123456789012",
//    "context": {"key": "value" | ["values"]}, "identityPolicies": [{"name", "policy"}], "resourcePolicy": {…}}
//   {"id": 1, "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Invalid", "explain": "…"}
// The decision is @cloud-copilot/iam-simulate's, in strict mode: AWS's evaluation logic (identity and resource
// policies, every condition operator, NotAction/NotResource, policy variables), with the action, the resource
// type and the context keys checked against AWS's Service Authorization Reference. "Invalid" is a request the
// simulator refused to evaluate (an unknown action, a resource of the wrong type, a malformed policy): a defect
// in the emulator's model of a call or in a policy, never an allow.
import { createInterface } from 'node:readline'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const request = JSON.parse(line)
    answer = { id: request.id, ...(await evaluate(request)) }
  } catch (error) {
    answer = { id: null, decision: 'Invalid', explain: `unreadable request: ${error}` }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}

async function evaluate(request) {
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context ?? {}
    },
    identityPolicies: request.identityPolicies ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy ?? undefined
  }
  const result = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (result.resultType === 'error') {
    return { decision: 'Invalid', explain: JSON.stringify(result.errors) }
  }
  const analyses = result.resultType === 'single' ? [result.result] : result.results
  let why = ''
  if (result.overallResult !== 'Allowed') {
    why = analyses.length ? analyses.map(explain).join('; ') : 'no statement names this action'
  }
  return { decision: result.overallResult, explain: why }
}

// Why a request was not allowed: every statement that names the action, and what in it did not match.
function explain(resourceResult) {
  const analysis = resourceResult.analysis
  const parts = []
  for (const [side, statements] of [
    ['identity', analysis.identityAnalysis],
    ['resource policy', analysis.resourceAnalysis]
  ]) {
    if (!statements) continue
    for (const deny of statements.denyStatements ?? []) {
      parts.push(`${side} statement ${label(deny)} denies it explicitly`)
    }
    for (const miss of statements.unmatchedStatements ?? []) {
      if (!miss.explain?.actionMatch) continue
      parts.push(`${side} statement ${label(miss)} names the action but ${why(miss)}`)
    }
  }
  if (parts.length === 0) parts.push('no statement names this action')
  if (resourceResult.ignoredContextKeys?.length) {
    parts.push(`context keys that do not apply and were ignored: ${resourceResult.ignoredContextKeys.join(', ')}`)
  }
  return parts.join('; ')
}

// The simulator names a statement by its Sid, or by its position when it has none.
function label(match) {
  return `"${match.explain?.identifier ?? '?'}" of policy ${match.policyId}`
}

function why(miss) {
  const explain = miss.explain ?? {}
  const reasons = []
  if (!explain.resourceMatch && explain.resources) {
    const resources = [explain.resources].flat().map((r) => r.resource)
    reasons.push(`its resources ${JSON.stringify(resources)} do not match`)
  }
  if (explain.conditionMatch === false) {
    for (const condition of explain.conditions ?? []) {
      if (condition.matches) continue
      const wanted = [condition.values ?? []].flat().map((v) => v.value ?? v)
      const missing = condition.failedBecauseMissing ? ' (the key is absent from the request)' : ''
      reasons.push(`its condition ${condition.operator} ${condition.conditionKeyValue} ${JSON.stringify(wanted)} fails${missing}`)
    }
  }
  if (explain.principalMatch && explain.principalMatch !== 'Match') reasons.push('its principal does not match')
  return reasons.length ? reasons.join(' and ') : 'it does not apply'
}
