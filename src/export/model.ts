/**
 * The rule model (flows -> rules) is decided by the plan stage: see src/plan/rules.ts. The export
 * generators read it from here.
 */
export * from '../plan/rules.js';
