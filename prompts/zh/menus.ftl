# 菜单：欢迎、语言、服务领域、邮政编码。句子要短，用词要简单。

welcome = 您好。这是外国公民免费热线，移民融合门户网站。
language-guess = 中文请按 { $digit }。
language-option = 中文请按 { $digit }。
language-more = 其他语言请按 { $digit }。
area-menu = 意大利语课程，请按 1。工作，请按 2。住房，请按 3。医疗，请按 4。儿童和青少年，请按 5。文化调解，请按 6。网站信息，请按 7。人工服务，请按 0。
portal-info = 这个网站汇集了意大利各地为外国人提供的服务。网址是 integrazionemigranti 点 gov 点 it。
cap-ask = 请输入邮政编码，五位数字。跳过请按井号键。
cap-landline = 您是从 { $province } 地区打来的吗？是请按 1，不是请按 2。或者输入邮政编码。
cap-invalid = 没有找到这个邮政编码。请再试一次。
cap-placed = 好的。我们在 { $place } 附近查找。
service-choice = 听最近的服务，请按 1。和工作人员通话，请按 2。
invalid-choice = 选择无效。
goodbye = 谢谢您的来电。再见。
# HTTP 适配器无法处理请求时说的话：来电者进入排队，不会被挂断。
technical-problem = 对不起，出现了技术问题。请稍候，工作人员马上接听。
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = 为了服务质量，本次通话可能会被录音。如果您不希望被录音，请按9。
recording-refused = 好的。本次通话不会被录音。
