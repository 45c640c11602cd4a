import type { Catalog } from '../catalog/types.js';

/**
 * Japanese text of the plan's own warnings (codes in docs/contracts.md), in the terms of the
 * Japanese Druva document (002_6cdecb47e9aff3d7.txt: ホスト, ポート, フロー, バックアッププロキシ).
 * Each function takes the same values the English message is built from and returns one line.
 */
export const WARNINGS_JA = {
  'role-without-hosts': (product: string, role: string, used: number) =>
    `${product}:${role} のロールを持つホストがありません。このロールのカタログエントリ ${used} 件からはフローが生成されません`,
  'condition-unknown': (product: string, entry: string, who: string, unknown: string) =>
    `${product} のエントリ ${entry} (${who}) をスキップしました: インベントリに ${unknown} が指定されていません`,
  'fact-default': (host: string, product: string, role: string, fact: string, value: string) =>
    `ホスト ${host} (${product}:${role}) はファクト ${fact} を指定していません。既定値 ${value} を使用します`,
  'fact-missing': (host: string, fact: string, product: string, entry: string) =>
    `ホスト ${host} は ${fact} を列挙していません。${product} のエントリ ${entry} (ドライブごとに1ポート) はこのホストのポートを生成しません`,
  'host-without-flows': (host: string) => `ホスト ${host} にはこの計画のフローがありません`,
  'address-in-cidr': (host: string, address: string, net: string, cidr: string) =>
    `ホスト ${host} (${address}) はホスト ${net} のCIDR ${cidr} の中にあります: ${host} から ${net} へのプローブは ${host} 自身に届きます。CIDRを狭めるか、${address} が ${net} としてプローブされることを了承してください`,
  /** One advisory entry left out of the plan: what to add, why (purpose-ja) and the page. */
  advisory: (product: string, entry: string, add: string, why: string, page: string) =>
    `勧告 ${product} ${entry} は計画されていません: ${add} を追加してください。${why}${page}; --advisories またはインベントリキー "advisories: include" で計画します。`,
  /** A pair an advisory would add whose condition needs facts the inventory does not give. */
  depends: (pair: string, unknown: string) => `${pair} (${unknown} に依存、未指定)`,
  more: (n: number) => `; ほか ${n} 件`,
  page: (title: string, url: string, read: string) => `出典: ${title} <${url}> (${read} 参照)`,
} as const;

/** Whether a catalog has a Japanese source document, the condition for Japanese warnings and notes. */
export function hasJapaneseDocument(cat: Catalog | undefined): boolean {
  return cat?.documents.some((d) => d.language === 'ja') ?? false;
}
