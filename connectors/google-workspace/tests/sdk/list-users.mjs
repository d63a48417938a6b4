// Lists every user of the fake Google Workspace with Google's official
// Admin SDK client for Node (@googleapis/admin), following nextPageToken
// with pageToken, and prints what it saw as JSON.
//
// usage: node list-users.mjs <fake base URL> <access token> [maxResults]
import { admin, auth } from '@googleapis/admin';

const [base, token, maxResults = '500'] = process.argv.slice(2);
if (!base || !token) {
  console.error('usage: node list-users.mjs <fake base URL> <access token> [maxResults]');
  process.exit(2);
}

const client = new auth.OAuth2();
client.setCredentials({ access_token: token });
const directory = admin({ version: 'directory_v1', auth: client, retry: false });
// The fake lives under a path prefix; a per-request rootUrl keeps it (the
// global option resolves the API path against the host root).
const options = { rootUrl: base.endsWith('/') ? base : `${base}/` };

let pages = 0;
let pageToken;
const ids = new Set();
let suspended = 0;
do {
  const res = await directory.users.list(
    {
      customer: 'my_customer',
      maxResults: Number(maxResults),
      pageToken,
      fields: 'nextPageToken,users(id,primaryEmail,suspended)',
    },
    options,
  );
  pages += 1;
  for (const user of res.data.users ?? []) {
    ids.add(user.id);
    if (user.suspended) suspended += 1;
  }
  pageToken = res.data.nextPageToken ?? undefined;
} while (pageToken);

const customer = await directory.customers.get({ customerKey: 'my_customer' }, options);
console.log(JSON.stringify({ pages, users: ids.size, suspended, customer: customer.data.id }));
