"""The client examples of seeds 000 and 001, as the documentation prints them (the text extraction lost
the Python indentation, restored here): the media uploads, which tests run against the live app after
replacing only SEED_HOST with its URL (and, in seed 000's curl example, the placeholder for the data),
each reading `image.jpg` from the directory it runs in; and seed 001's download of received media, which
tests run on the attachments the read API returns."""

from __future__ import annotations

SEED_HOST = "https://api.approvedcontact.com"
SEED_000_DATA_PLACEHOLDER = "BASE64_ENCODED_IMAGE_DATA"

# Seed 000, "MMS Messages", Step 1: Upload Media.
SEED_000_CURL = """\
curl -X POST https://api.approvedcontact.com/api/v1/media \\
-u "your-email@example.com:your-password" \\
-H "Content-Type: application/json" \\
-d '{
"phoneNumberId": "00000000-0000-0000-0000-000000000000",
"fileName": "product-image.jpg",
"mimeType": "image/jpeg",
"content": "BASE64_ENCODED_IMAGE_DATA"
}'
"""

# Seed 001, "Example: Upload an Image": curl.
SEED_001_CURL = """\
# Base64 encode the image file data
BASE64_IMAGE=$(base64 -i image.jpg)
curl -X POST https://api.approvedcontact.com/api/v1/media \\
-u "your-email@example.com:your-password" \\
-H "Content-Type: application/json" \\
-d "{
\\"phoneNumber\\": \\"+15551234567\\",
\\"fileName\\": \\"product-image.jpg\\",
\\"contentType\\": \\"image/jpeg\\",
\\"data\\": \\"$BASE64_IMAGE\\",
\\"tenantId\\": \\"00000000-0000-0000-0000-000000000000\\"
}"
"""

# Seed 001: Python.
SEED_001_PYTHON = """\
import requests
import base64
# Read and convert file to byte array
with open('image.jpg', 'rb') as f:
    file_bytes = f.read()
credentials = base64.b64encode(b'your-email@example.com:your-password').decode()
response = requests.post(
    'https://api.approvedcontact.com/api/v1/media',
    headers={'Authorization': f'Basic {credentials}'},
    json={
        'phoneNumber': '+15551234567',
        'fileName': 'product-image.jpg',
        'contentType': 'image/jpeg',
        'data': list(file_bytes), # Convert bytes to array of integers
        'tenantId': '00000000-0000-0000-0000-000000000000'
    }
)
media_url = response.json()['uri']
print(f'Uploaded: {media_url}')
"""

# Seed 001: Node.
SEED_001_NODE = """\
const fs = require('fs');
const axios = require('axios');
// Read file as buffer and convert to byte array
const fileBuffer = fs.readFileSync('image.jpg');
const byteArray = Array.from(fileBuffer);
const credentials = Buffer.from('your-email@example.com:your-password').toString('base64');
axios.post(
'https://api.approvedcontact.com/api/v1/media',
{
phoneNumber: '+15551234567',
fileName: 'product-image.jpg',
contentType: 'image/jpeg',
data: byteArray,
tenantId: '00000000-0000-0000-0000-000000000000'
},
{
headers: { 'Authorization': `Basic ${credentials}` }
}
)
.then(response => {
console.log(`Uploaded: ${response.data.uri}`);
});
"""

# Seed 001, "Downloading Received Media": Python (the Flask handler around it is left out; its loop is
# the tests' harness).
SEED_001_PYTHON_DOWNLOAD = """\
import requests
from pathlib import Path
def download_media(attachment):
    response = requests.get(attachment['url'])
    if response.status_code == 200:
        # Save to disk
        file_path = Path('downloads') / attachment['name']
        file_path.parent.mkdir(exist_ok=True)
        with open(file_path, 'wb') as f:
            f.write(response.content)
        print(f"Downloaded: {file_path}")
        return file_path
    return None
"""

# Seed 001, "Downloading Received Media": Node (likewise without its Express handler).
SEED_001_NODE_DOWNLOAD = """\
const fs = require('fs');
const path = require('path');
const axios = require('axios');
async function downloadMedia(attachment) {
const response = await axios.get(attachment.url, {
responseType: 'arraybuffer'
});
const dir = 'downloads';
if (!fs.existsSync(dir)) {
fs.mkdirSync(dir, { recursive: true });
}
const filePath = path.join(dir, attachment.name);
fs.writeFileSync(filePath, response.data);
console.log(`Downloaded: ${filePath}`);
return filePath;
}
"""
