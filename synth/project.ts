/**
 * What the chart says about the project (name, versions, home, maintainers),
 * from package.json, the one place the gateway and the chart share them.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pkg = require('../package.json') as {
  version: string;
  description: string;
  license: string;
  homepage: string;
  repository: { url: string };
  author: { name: string; url: string };
};

export const PROJECT = {
  version: pkg.version,
  description: pkg.description,
  license: pkg.license,
  /** The repository's web page. */
  home: pkg.homepage,
  /** The repository as a browsable URL (package.json holds its git URL). */
  source: pkg.repository.url.replace(/\.git$/, ''),
  maintainer: pkg.author,
  /** A file of the repository's main branch as served raw (for the chart icon). */
  rawFile: (path: string) => `${pkg.homepage.replace('https://github.com/', 'https://raw.githubusercontent.com/')}/main/${path}`,
} as const;
