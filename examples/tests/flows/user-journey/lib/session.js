import http from 'k6/http';
import { check, group } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:18080';

export function login(user) {
  return group('login', () => {
    const res = http.post(`${BASE}/api/login`, JSON.stringify(user), {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: 'login' },
    });
    check(res, { 'logged in': (r) => r.status === 200 });
    return { user: user.name };
  });
}

export function browse(session, pages) {
  group('browse', () => {
    for (let i = 1; i <= pages; i++) {
      const res = http.get(`${BASE}/api/items?page=${i}`, { tags: { name: 'list' } });
      check(res, { 'page loads': (r) => r.status === 200 });
    }
  });
}

export function checkout(session) {
  group('checkout', () => {
    const res = http.post(`${BASE}/api/checkout`, JSON.stringify({ item: 7, user: session.user }), {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: 'checkout' },
    });
    check(res, { 'checked out': (r) => r.status === 201 || r.status === 200 });
  });
}
