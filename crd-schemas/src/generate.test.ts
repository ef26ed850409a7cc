import { readFileSync } from 'node:fs';
import * as yaml from 'js-yaml';
import { generateAll, loadPoolSource, loadSource, OUTPUTS, toCrd, toJsonSchema } from './generate';

describe('CRD generation', () => {
  it('generated artifacts are up to date with crd-schemas/sessionlivedbackend.crd.yaml (run `npm run generate`)', async () => {
    const fresh = await generateAll();
    for (const [key, text] of Object.entries(fresh)) {
      const onDisk = readFileSync(OUTPUTS[key as keyof typeof OUTPUTS], 'utf8');
      expect({ file: OUTPUTS[key as keyof typeof OUTPUTS], text: onDisk }).toEqual({
        file: OUTPUTS[key as keyof typeof OUTPUTS],
        text,
      });
    }
  });

  it('produces a self-contained structural CRD with the original names, defaults and columns', () => {
    const crd = toCrd(loadSource()) as any;
    expect(crd.metadata.name).toBe('sessionlivedbackends.spawner.dev');
    expect(crd.spec.names).toMatchObject({ kind: 'SessionLivedBackend', shortNames: ['slab'], categories: ['spawner'] });
    const v1 = crd.spec.versions[0];
    expect(v1.subresources).toEqual({ status: {} });
    expect(v1.additionalPrinterColumns.map((c: any) => c.name)).toEqual(expect.arrayContaining(['Phase', 'Node', 'URL', 'Age']));
    const spec = v1.schema.openAPIV3Schema.properties.spec;
    expect(spec.properties.httpPort.default).toBe(8080);
    expect(spec.properties.gracePeriodSeconds.default).toBe(300);
    const text = yaml.dump(crd);
    expect(text).not.toContain('$ref');
    expect(text).not.toContain('x-spawner');
    expect(text).not.toContain('definitions');
  });

  it('produces the SessionBackendPool CRD (v1alpha1, sbpool, scale subresource) from the shared definitions', () => {
    const crd = toCrd(loadPoolSource()) as any;
    expect(crd.metadata.name).toBe('sessionbackendpools.spawner.dev');
    expect(crd.spec.group).toBe('spawner.dev');
    expect(crd.spec.names).toMatchObject({ kind: 'SessionBackendPool', shortNames: ['sbpool'], categories: ['spawner'] });
    const v = crd.spec.versions[0];
    expect(v.name).toBe('v1alpha1');
    expect(v.subresources).toEqual({
      status: {},
      scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' },
    });
    expect(v.additionalPrinterColumns.map((c: any) => c.name)).toEqual(expect.arrayContaining(['Desired', 'Ready', 'Age']));
    const spec = v.schema.openAPIV3Schema.properties.spec;
    expect(spec.properties.whenEmpty.enum).toEqual(['ColdStart', 'Reject']);
    // The same template as a backend's.
    const backendSpec = (toCrd(loadSource()) as any).spec.versions[0].schema.openAPIV3Schema.properties.spec;
    expect(spec.properties.template).toEqual(backendSpec.properties.template);
    expect(backendSpec.properties.poolRef.required).toEqual(['name']);
    expect(yaml.dump(crd)).not.toContain('$ref');
  });

  it('turns Kubernetes schema extensions into plain JSON Schema for ajv', () => {
    const schema = toJsonSchema(loadSource()) as any;
    expect(schema.definitions.Quantity.anyOf).toHaveLength(2);
    expect(JSON.stringify(schema)).not.toContain('x-kubernetes');
    expect(schema.definitions.SessionLivedBackendSpec.additionalProperties).toBe(false);
    expect(schema.definitions.BackendContainer.additionalProperties).toBe(true);
  });

  it('fails clearly on a reference to a missing definition', () => {
    const source = loadSource();
    (source.definitions.SessionLivedBackendSpec as any).properties.template = { $ref: '#/definitions/Nope' };
    expect(() => toCrd(source)).toThrow('unknown definition Nope');
  });
});
