import t from 'tap'
import { decodeAccessTokenClaims, decodeBase64Url, decodeIdTokenClaims, decodeJwtPayload, isCodexValidIdToken } from '../src/codex/jwt.js'
import { base64url, fakeJwt } from './support/tokens.js'

const AUTH = 'https://api.openai.com/auth'
const PROFILE = 'https://api.openai.com/profile'
const header = base64url('{"alg":"none"}')

t.test('decodeJwtPayload', async (t) => {
  const cases: [string, string, Record<string, unknown> | null][] = [
    ['plain JWT', fakeJwt({ a: 1 }), { a: 1 }],
    ['two parts', `${header}.${base64url('{"a":1}')}`, null],
    ['empty header', `.${base64url('{"a":1}')}.sig`, null],
    ['empty payload', `${header}..sig`, null],
    ['empty signature', `${header}.${base64url('{"a":1}')}.`, null],
    ['not base64', `${header}.!!!.sig`, null],
    ['payload not JSON', `${header}.${base64url('hello')}.sig`, null],
    ['payload an array', `${header}.${base64url('[1]')}.sig`, null],
    ['payload a string', `${header}.${base64url('"x"')}.sig`, null],
    ['padded payload tolerated', `${header}.${Buffer.from('{"a":1}').toString('base64')}.sig`, { a: 1 }],
    ['four parts: Codex ignores the rest', `${fakeJwt({ a: 2 })}.more`, { a: 2 }],
    ['no dots', 'opaque-token', null],
    ['empty string', '', null],
  ]
  for (const [name, token, want] of cases) t.same(decodeJwtPayload(token), want, name)
})

t.test('decodeBase64Url strictness matches Codex URL_SAFE_NO_PAD', async (t) => {
  t.ok(decodeBase64Url('eyJhIjoxfQ', true), 'canonical unpadded')
  t.equal(decodeBase64Url('eyJhIjoxfQ==', true), null, 'padding rejected')
  t.equal(decodeBase64Url('eyJhIjoxfR', true), null, 'non-zero trailing bits rejected')
  t.equal(decodeBase64Url('a', true), null, 'length 1 mod 4 rejected')
  t.equal(decodeBase64Url('ab+/', true), null, 'standard alphabet rejected')
  t.ok(decodeBase64Url('ab+/', false), 'standard alphabet tolerated when lenient')
})

t.test('isCodexValidIdToken', async (t) => {
  const cases: [string, string, boolean][] = [
    ['fake JWT with claims', fakeJwt({ email: 'a@example.com', [AUTH]: { chatgpt_plan_type: 'pro' } }), true],
    ['empty claims', fakeJwt({}), true],
    ['null claims are fine', fakeJwt({ email: null, [AUTH]: null, [PROFILE]: null }), true],
    ['not-a-jwt', 'not-a-jwt', false],
    ['empty', '', false],
    ['non-JSON payload', `${header}.${base64url('nope')}.sig`, false],
    ['padded payload', `${header}.${Buffer.from('{"a":1}').toString('base64')}.sig`, false],
    ['email a number', fakeJwt({ email: 5 }), false],
    ['auth claim a string', fakeJwt({ [AUTH]: 'x' }), false],
    ['plan type a number', fakeJwt({ [AUTH]: { chatgpt_plan_type: 3 } }), false],
    ['profile email a bool', fakeJwt({ [PROFILE]: { email: true } }), false],
  ]
  for (const [name, token, want] of cases) t.equal(isCodexValidIdToken(token), want, name)
})

t.test('decodeIdTokenClaims', async (t) => {
  const cases: [string, string, ReturnType<typeof decodeIdTokenClaims>][] = [
    [
      'all claims',
      fakeJwt({ email: 'a@example.com', [AUTH]: { chatgpt_plan_type: 'plus', chatgpt_user_id: 'u1', user_id: 'u0', chatgpt_account_id: 'acc1' } }),
      { email: 'a@example.com', planType: 'plus', userId: 'u1', accountId: 'acc1' },
    ],
    ['email from profile', fakeJwt({ [PROFILE]: { email: 'p@example.com' } }), { email: 'p@example.com', planType: null, userId: null, accountId: null }],
    ['top-level email wins', fakeJwt({ email: 'e@example.com', [PROFILE]: { email: 'p@example.com' } }), { email: 'e@example.com', planType: null, userId: null, accountId: null }],
    ['user_id fallback', fakeJwt({ [AUTH]: { user_id: 'u0' } }), { email: null, planType: null, userId: 'u0', accountId: null }],
    ['unknown plan kept', fakeJwt({ [AUTH]: { chatgpt_plan_type: 'galaxy' } }), { email: null, planType: 'galaxy', userId: null, accountId: null }],
    ['wrong types are nulls', fakeJwt({ email: 5, [AUTH]: { chatgpt_account_id: 7 } }), { email: null, planType: null, userId: null, accountId: null }],
    ['garbage', 'garbage', { email: null, planType: null, userId: null, accountId: null }],
  ]
  for (const [name, token, want] of cases) t.same(decodeIdTokenClaims(token), want, name)
})

t.test('decodeAccessTokenClaims', async (t) => {
  const cases: [string, string, ReturnType<typeof decodeAccessTokenClaims>][] = [
    ['exp and iat', fakeJwt({ exp: 1795009237, iat: 1794145237 }), { exp: 1795009237, iat: 1794145237 }],
    ['exp only', fakeJwt({ exp: 1795009237 }), { exp: 1795009237, iat: null }],
    ['string exp ignored', fakeJwt({ exp: '1795009237' }), { exp: null, iat: null }],
    ['opaque token', 'opaque-token', { exp: null, iat: null }],
  ]
  for (const [name, token, want] of cases) t.same(decodeAccessTokenClaims(token), want, name)
})
