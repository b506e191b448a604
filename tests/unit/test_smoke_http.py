async def test_login_then_home(client, login):
    await login(client, "organizer")
    resp = await client.get("/")
    assert resp.status == 200
    assert "organizer1" in await resp.text()
