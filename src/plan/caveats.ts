import type { Catalog } from '../catalog/types.js';
import type { Flow, Plan } from '../model/flow.js';

/** The setting that opens the dynamic RPC range WMI moves to (catalog/platespin.yaml). */
export const DYNAMIC_RPC_SETTING = 'wmi-dynamic-ports';

/** Host pairs named in one caveat before "and N more". */
const MAX_PAIRS = 4;

/**
 * What rules built from the plan leave shut although the product needs it next: a flow to the RPC
 * endpoint mapper (service msrpc, tcp/135) opens 135 only, and WMI/DCOM moves on to a dynamic port
 * ([MS-RPCE] 2.2.1.2; 49152-65535 by default, Microsoft KB 929851) unless the plan also has the
 * dynamic range (service msrpc-dynamic) between the same hosts. One line per product, naming the
 * host pairs and the setting that opens the range when the product's catalog has one. `host`
 * narrows to the flows of one host (export --host).
 */
export function rpcCaveats(plan: Plan, catalogs: ReadonlyMap<string, Catalog>, host?: string): string[] {
  const dynamic = new Set(
    plan.flows
      .filter((f) => f.service === 'msrpc-dynamic')
      .map((f) => `${f.product}|${f.from.host}|${f.to.host}`),
  );
  const byProduct = new Map<string, Flow[]>();
  for (const f of plan.flows) {
    if (f.service !== 'msrpc' || f.local || !f.ports.some(([lo, hi]) => lo <= 135 && hi >= 135)) continue;
    if (host !== undefined && f.from.host !== host && f.to.host !== host) continue;
    if (dynamic.has(`${f.product}|${f.from.host}|${f.to.host}`)) continue;
    const list = byProduct.get(f.product) ?? [];
    list.push(f);
    byProduct.set(f.product, list);
  }
  const out: string[] = [];
  for (const [product, flows] of byProduct) {
    const pairs = flows.map((f) => `${f.from.host ?? 'any'} -> ${f.to.host ?? 'any'}`);
    const shown =
      pairs.slice(0, MAX_PAIRS).join(', ') +
      (pairs.length > MAX_PAIRS ? `, and ${pairs.length - MAX_PAIRS} more` : '');
    const setting = catalogs.get(product)?.settings?.[DYNAMIC_RPC_SETTING];
    const how = setting
      ? `set products.${product}.${DYNAMIC_RPC_SETTING}: open to add it (Windows export: -LocalPort RPC)`
      : 'open the dynamic RPC range (Windows: -LocalPort RPC) or pin the service to a fixed port';
    out.push(
      `${product} ${shown}: tcp/135 opens the RPC endpoint mapper only; WMI/DCOM then moves to a dynamic port (49152-65535 by default) that these rules do not open; ${how}`,
    );
  }
  return out;
}
