# Menutë: mirëseardhja, gjuha, fusha, kodi postar. Fjali të shkurtra, fjalë të thjeshta.

welcome = Mirë se vini. Kjo është linja falas për shtetasit e huaj, e Portale Integrazione Migranti.
language-guess = Shqip, shtypni { $digit }.
language-option = Shqip, shtypni { $digit }.
language-more = Për gjuhë të tjera, shtypni { $digit }.
area-menu = Për kurse të gjuhës italiane, shtypni 1. Për punë, shtypni 2. Për banesë, shtypni 3. Për shëndetin, shtypni 4. Për fëmijë dhe të rinj, shtypni 5. Për ndërmjetësim kulturor, shtypni 6. Për informacion mbi portalin, shtypni 7. Për një operator, shtypni 0.
portal-info = Portali mbledh shërbimet për të huajt në gjithë Italinë. E gjeni në integrazionemigranti pikë gov pikë it.
cap-ask = Shkruani kodin postar, pesë shifra. Për ta kapërcyer, shtypni tastin e kryqit.
cap-landline = Po telefononi nga zona e { $province }? Shtypni 1 për po, 2 për jo. Ose shkruani kodin postar.
cap-invalid = Ky kod postar nuk u gjet. Provoni përsëri, ju lutem.
cap-placed = Mirë. Po kërkojmë pranë { $place }.
service-choice = Për shërbimet më të afërta, shtypni 1. Për të folur me një operator, shtypni 2.
invalid-choice = Zgjedhje e gabuar.
goodbye = Faleminderit që telefonuat. Mirupafshim.
# Thuhet nga përshtatësit HTTP kur një kërkesë nuk përpunohet: telefonuesi vihet në radhë.
technical-problem = Na vjen keq, ka një problem teknik. Ju lutem prisni për një operator.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = Kjo thirrje mund të regjistrohet për cilësinë e shërbimit. Nëse nuk dëshironi të regjistroheni, shtypni 9.
recording-refused = Në rregull. Kjo thirrje nuk do të regjistrohet.
