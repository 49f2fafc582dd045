import { sleep } from 'k6';
import { login, browse, checkout } from './lib/session.js';

const users = JSON.parse(open('./data/users.json'));

export default function () {
  const user = users[__VU % users.length];
  const session = login(user);
  browse(session, 3);
  checkout(session);
  sleep(0.5);
}
