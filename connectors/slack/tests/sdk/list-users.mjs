// Lists every user of the fake Slack with Slack's official Node SDK, using
// its own cursor paging (`paginate`), and prints what it saw as JSON.
//
// usage: node list-users.mjs <slackApiUrl ending in /api/> <token> [limit]
import { WebClient, LogLevel } from '@slack/web-api';

const [apiUrl, token, limit = '200'] = process.argv.slice(2);
if (!apiUrl || !token) {
  console.error('usage: node list-users.mjs <slackApiUrl> <token> [limit]');
  process.exit(2);
}

const client = new WebClient(token, {
  slackApiUrl: apiUrl,
  logLevel: LogLevel.ERROR,
  retryConfig: { retries: 0 },
});

const auth = await client.auth.test();
let pages = 0;
const ids = new Set();
for await (const page of client.paginate('users.list', { limit: Number(limit) })) {
  pages += 1;
  for (const member of page.members) {
    ids.add(member.id);
  }
}
console.log(JSON.stringify({ team_id: auth.team_id, pages, users: ids.size }));
