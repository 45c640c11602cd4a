export function replaceSection(text: string, begin: string, end: string, section: string): string;
