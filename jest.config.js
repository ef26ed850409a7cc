/**
 * Two projects: `unit` (every *.test.ts beside the code, no cluster needed) and `e2e`
 * (every *.e2e.ts under e2e/, against a real control plane; see e2e/README.md).
 */
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, sourceMaps: 'inline' }] };
const common = {
  transform,
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  modulePathIgnorePatterns: ['<rootDir>/dist/'],
};

module.exports = {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/**/*.test.ts'],
      moduleNameMapper: { '^prettier$': '<rootDir>/crd-schemas/src/prettier-stub.js' },
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/e2e/**/*.e2e.ts'],
      globalSetup: '<rootDir>/e2e/support/global-setup.ts',
      globalTeardown: '<rootDir>/e2e/support/global-teardown.ts',
      slowTestThreshold: 60,
    },
  ],
  reporters: [
    'default',
    [
      'jest-junit',
      { outputDirectory: 'reports', outputName: process.env.JEST_JUNIT_OUTPUT_NAME || 'junit.xml', addFileAttribute: 'true' },
    ],
  ],
};
